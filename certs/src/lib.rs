//! Cluster CA, certificate issuance, and ready-made quinn/rustls configurations (being written).
