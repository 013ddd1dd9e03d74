//! Windows fault handling: placeholder, being written.
