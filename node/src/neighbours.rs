//! Neighbour core (being written).
