"""Long work the console asks for (an import, a wave launch, an export, the report) run by the worker as jobs:
the queue (:mod:`.queue`) and one module per kind of job."""
