/* A shared library without the driver entry point. */
int knpu_something_else(void) { return 1; }
