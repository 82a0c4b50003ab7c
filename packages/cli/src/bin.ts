#!/usr/bin/env node
/**
 * The `stepwise` executable's first module: node builtins only, so that it runs at once. A sweep
 * starts its runner processes here, before this process loads the command line and the sweep's
 * modules (~2 s of one core): the runners load theirs meanwhile, on the cores this process leaves
 * idle, and wait for the sweep to hand them their storage (`RunnerStart`). Then the command
 * itself (`BinMain`).
 */
import * as RunnerStart from "./RunnerStart.js"

if (process.argv[2] === "sweep") RunnerStart.prestart(process.argv.slice(3))
await import("./BinMain.js")
