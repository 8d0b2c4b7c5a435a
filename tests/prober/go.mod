module probe-tracer/tests/prober

go 1.19
