pub mod observe;
pub mod verdict;
