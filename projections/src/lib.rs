//! Read models and the projectors that maintain them.
//!
//! Empty for now: until the read side lands, every query is answered from the event store
//! (the aggregates and the expression-indexed lookups in the server's `store` module).
