#!/usr/bin/env node
// The `stepwise` executable is compiled to dist/bin.js. This file is committed (with its executable
// bit) so that npm can link the bin at install time in the repo, before `prepare` has built dist/:
// npm silently skips a bin whose file does not exist yet.
import "../dist/bin.js"
