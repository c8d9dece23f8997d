//! Placeholder library so the bench crate builds.
