"""Everything that talks to Huawei Cloud: credentials, request signing and auth, the paging client,
its rate limit, the API's errors and the count of API calls."""
