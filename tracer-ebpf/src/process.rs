//! Process and namespace hooks (runc exec failures). See issue 4.
