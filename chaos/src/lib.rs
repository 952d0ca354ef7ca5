//! The swarmcast chaos harness: scenarios, process and netns orchestration, verification and
//! reports. Its scenarios arrive with the data plane; the crate exists now so that the
//! dependency direction (proto ← certs ← bootstrap / node ← chaos ← CLI) is fixed from the start.
