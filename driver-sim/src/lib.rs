//! The software NPU.
