//! Storage: receiver workspaces and origin sources (being written).
