//! Swarm scheduling core (being written).
