//! Whole-deployment scenarios against real Postgres and NATS, compiled into one test
//! binary (one link step). Each case file is one story an operator or a browser lives
//! through.

#[cfg(test)]
mod cases;
