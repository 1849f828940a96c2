//! Crashes, with real processes: the platform's services in this process (Users included, so
//! tokens and service tokens are real), Payments or Orders as a child process that dies.
