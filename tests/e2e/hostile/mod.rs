//! The hostile-tenant suite: a tenant that sends arbitrary SQL, Redis commands, key-value
//! keys, outbound URLs, Host headers and admin calls tries every way across the host's
//! isolation, and the tests show that nothing crosses — one module per class.

mod egress;
mod postgres;
mod redis;
mod routes;
mod secrets;
mod tls;
