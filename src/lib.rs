pub mod ourdb;
