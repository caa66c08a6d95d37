package authz_test

import (
	"errors"
	"fmt"

	"github.com/gatehouse-dev/gatehouse/authz"
	policyv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/policy/v1"
	"github.com/gatehouse-dev/gatehouse/jwtauth"
	"google.golang.org/protobuf/reflect/protoregistry"
)

func ExampleEvaluate() {
	rule := &policyv1.UserRule{Scopes: []string{"orders.read", "orders.write"}}
	reader := &jwtauth.Principal{Subject: "bob", Scopes: []string{"orders.read"}}

	err := authz.Evaluate(rule, reader)
	fmt.Println(errors.Is(err, authz.ErrForbidden))
	fmt.Println(err)
	// Output:
	// true
	// forbidden: missing scopes "orders.write"
}

// Loading the rules of the Gatehouse services at startup; a method without
// a user rule makes Load fail.
func ExampleLoad() {
	services, err := authz.FindServices(protoregistry.GlobalFiles,
		"gatehouse.catalog.v1.CatalogService")
	if err != nil {
		fmt.Println(err)
		return
	}

	policy, err := authz.Load(services)
	if err != nil {
		fmt.Println(err)
		return
	}

	rule, _ := policy.Rule("/gatehouse.catalog.v1.CatalogService/ReserveStock")
	fmt.Println(rule.GetScopes())
	// Output: [orders.write]
}
