// Preloaded (NODE_OPTIONS --require, set by app.py) into the node process that runs CDK for Python: the
// jsii kernel. Every synth runs CDK's built-in CloudFormation validation as WebAssembly; V8 then
// recompiles its hot functions with TurboFan on background threads, work that outlives the synth and
// holds up the kernel's exit (measured: 1.2 s of a 4.3 s `cdk synth` on 2 cores). A synth is over in
// seconds, so the baseline (Liftoff) code stays. A flag a later node drops is reported on stderr and
// changes nothing (tests/test_pcluster_worker.py checks that the installed node reports none).
"use strict";
const v8 = require("v8");
for (const flag of ["--no-wasm-tier-up", "--no-wasm-dynamic-tiering"]) {
  v8.setFlagsFromString(flag);
}
