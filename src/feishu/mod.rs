//! The Feishu Open API: auth, the HTTP client and its error policy, the parsers of its
//! answers (`parse`: pure, fuzzed), and the wire types.
//! Wire types never leave this module except through `normalize`.

pub mod auth;
pub mod client;
pub mod error;
pub mod parse;
pub mod wire;

pub use client::{FeishuClient, TicketFetch};
pub use error::{ApiError, Disposition};
