pub mod placeholder_for_helper {}
