//! Windows file mapping: placeholder, being written.
