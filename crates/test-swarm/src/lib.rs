//! Test swarm fixtures.
