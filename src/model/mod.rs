//! The vocabulary every stage shares, below the store: the customer, their events and
//! journeys as expressions and templates see them (`customer`), the shop's orders (`order`), ids (`ids`), every state a
//! stored row can be in (`states`), what an expression reads of a customer's past
//! (`history`), the audience conditions the store can decide (`filter`), and an email as
//! composed (`rendered`). Nothing here reads a file, a socket or the database, and nothing
//! here imports a module above it: the store, the workflow compiler and the engine all
//! speak these types to each other.

pub mod customer;
pub mod filter;
pub mod history;
pub mod ids;
pub mod order;
pub mod payload;
pub mod rendered;
pub mod states;
