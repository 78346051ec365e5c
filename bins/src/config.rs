//! The gateway daemons' flags, shared by their command lines and their `--config` files, so
//! a file is read by the same code however it arrives (and the fuzz targets reach it).

pub mod s2cs;
pub mod s2ds;
