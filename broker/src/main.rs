//! `karnak`: a Kafka-wire-compatible broker.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    karnak_broker::main(karnak_broker::Args::parse())
}
