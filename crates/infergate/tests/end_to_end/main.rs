//! The binary end to end: `infergate serve` (one node or several) on port 0, driven over
//! loopback as its users drive it. One test binary for all of it: one link instead of one
//! per file, and the tests that mostly wait (windows of a minute, several nodes, a
//! browser) share the test threads with the rest instead of running alone.

mod common;

mod cli;
mod cluster;
mod e2e;
mod fleets;
mod gateway;
mod ops;
mod smuggling;
mod throttle;
mod token_limits;
mod usage;
