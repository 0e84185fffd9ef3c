//! Flow tests against a fake API server (to be written).
