//! Token API Spin component (SPEC §6).
