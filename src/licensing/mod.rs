//! Client-app licensing: what a license key or license token proves.

pub mod token;
