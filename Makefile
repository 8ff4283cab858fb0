# The two set-up commands of the README. Both install what they need first (idempotent).
.PHONY: run test

run:  ## install, import the sample photos, build the index, serve http://127.0.0.1:8000
	scripts/install
	scripts/run

test:  ## install with test tools, run the suite (SQLite; PostgreSQL on object storage; Milvus server)
	scripts/install --dev
	scripts/test
