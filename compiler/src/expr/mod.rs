//! Condition expressions (`transitions[].condition`): the `simple` grammar and [`ParseError`]
//! live in `flatmachines-ir` (the runtime evaluates them without the front end); the CEL
//! syntax check, which needs the `cel` crate, lives here.

pub use flatmachines_ir::expr::{ParseError, simple};

#[cfg(feature = "cel")]
pub mod cel;
