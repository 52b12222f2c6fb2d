//! dohgate's end-to-end tests: one test binary made of modules, talking to the gateway over
//! real sockets on 127.0.0.1 (port 0) and to stub upstreams that record what they receive.

mod attacks;
mod cache;
mod cli;
mod ddr;
mod do53;
mod docs;
mod doh;
mod doh_out;
mod firewall;
mod import;
mod observability;
mod profiles;
mod ratelimit;
mod reload;
mod support;
