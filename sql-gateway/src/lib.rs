//! SQL gateway arrives with issue 4.
