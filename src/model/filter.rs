//! The part of an audience the store can decide: comparisons of a customer's own columns
//! with literals, all of which must hold. `workflow::expr::pushdown` finds them in an
//! audience's text; the store turns them into its `WHERE` clause.

/// A literal compared with a column.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterValue {
    Int(i64),
    Float(f64),
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// `column OP value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub column: &'static str,
    pub op: Comparison,
    pub value: FilterValue,
    /// Whether the column may be NULL (Rhai sees `()`, which equals no literal).
    pub nullable: bool,
}

/// The conditions an audience pushes into the customers query (none: every customer).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnFilter {
    pub conditions: Vec<Condition>,
}

impl ColumnFilter {
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }
}
