//! The knpu runtime.
