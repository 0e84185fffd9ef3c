//! What the deployer does, apart from how a command asks for it: the release procedure shared by
//! `deploy`, `rollback` and the automatic rollback of a failed deploy, and the choice of the
//! release a rollback returns to. It speaks to a [`crate::platform::Target`] only, never to a tool,
//! so it is the same on Docker Compose and on Kubernetes.

pub mod lock;
pub mod release;
pub mod rollback;
#[cfg(test)]
mod tests;
