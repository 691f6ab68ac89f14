//! What the store's numbers mean, for every command and page that shows them: the verdict
//! of an experiment (`results`), counts grouped as a reader reads them (`counts`), and the
//! report's page with its charts (`report`, `charts`). The commands only print.

pub mod charts;
pub mod counts;
pub mod report;
pub mod results;
