module github.com/valuechip/valuechip

go 1.24.0

require (
	github.com/chzyer/readline v1.5.1
	github.com/ebfe/scard v0.0.0-20241214075232-7af069cabc25
	github.com/spf13/cobra v1.10.1
	github.com/stretchr/testify v1.11.1
)

require (
	github.com/davecgh/go-spew v1.1.1 // indirect
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/pmezard/go-difflib v1.0.0 // indirect
	github.com/spf13/pflag v1.0.9 // indirect
	golang.org/x/sys v0.0.0-20220310020820-b874c991c1a5 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)
