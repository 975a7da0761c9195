module github.com/tollgate/tollgate/clients/go

go 1.21

require (
	google.golang.org/grpc v1.65.0
	google.golang.org/protobuf v1.34.2
)
