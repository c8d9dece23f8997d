//! The local index cache.
pub mod cache;
