//! The spanned model of machine, agent and profile documents.
//!
//! Values that are templates (`context`, `input`, `output`, …) stay YAML [`Node`](crate::yaml::Node)s:
//! the checks need their positions, and the runtime turns them into JSON.

pub mod agent;
pub mod machine;
pub(crate) mod read;
