//! Workflows, from the YAML a marketer writes to the plan the engine runs: `raw` is the
//! file as serde reads it, `compile` checks everything and builds the `plan`, with Rhai
//! expressions (`expr`), Tera templates (`templates`) and lifecycle stages (`stages`).

pub mod compile;
pub mod expr;
pub mod plan;
pub mod raw;
pub mod stages;
pub mod templates;
