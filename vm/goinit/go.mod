module github.com/voipgw/voipgw/vm/goinit

go 1.26.8
