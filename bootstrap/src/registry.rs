//! Registry core (being written).
