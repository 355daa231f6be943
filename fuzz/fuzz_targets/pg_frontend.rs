#![no_main]

use bytes::BytesMut;
use karnak_fuzz as _;
use pgwire::messages::{DecodeContext, PgWireFrontendMessage, ProtocolVersion};

// What a SQL client sends, decoded as the gateway's connection does: the
// first byte picks the state (before TLS negotiation, before the startup
// message, or a started session), then messages are taken off the buffer
// until it runs out or one is refused.
//
// pgwire 0.41 panics on some malformed messages (a length field under 4,
// a Parse cut short: found by this target, fuzz/RESULTS.md). The panic
// ends that SQL connection's task and the connection closes; the broker
// lives on (compat-tests/test_sql_limits.py checks it). Such panics are
// contained here the same way, so the target goes on looking for what
// would not be contained: aborts, allocations past the bound, hangs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let _ = std::panic::catch_unwind(|| decode_all(data));
    std::panic::set_hook(hook);
});

fn decode_all(data: &[u8]) {
    let Some((&state, rest)) = data.split_first() else {
        return;
    };
    let mut ctx = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
    ctx.awaiting_frontend_ssl = state % 3 == 0;
    ctx.awaiting_frontend_startup = state % 3 != 2;
    let mut buf = BytesMut::from(rest);
    for _ in 0..1000 {
        match PgWireFrontendMessage::decode(&mut buf, &ctx) {
            // As the SCRAM exchange reads it at its two steps.
            Ok(Some(PgWireFrontendMessage::PasswordMessageFamily(p))) => {
                if state & 4 == 0 {
                    let _ = p.into_sasl_initial_response();
                } else {
                    let _ = p.into_sasl_response();
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
}
