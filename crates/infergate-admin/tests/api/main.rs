//! API tests of the management plane, in process over a temporary SQLite store.

mod apis;
mod apps;
mod auths;
mod definitions;
mod harness;
mod iam;
mod lockouts;
mod openapi;
mod roles;
mod services;
mod throttles;
