//! A short soak of mixed traffic, then the invariants.
