//! Pharaoh shards arrive with issue 3.
