package clientip_test

import (
	"fmt"
	"net/http"

	"github.com/gatehouse-dev/gatehouse/clientip"
)

func ExampleResolver_Resolve() {
	// The load balancer at 10.0.0.2 appends to X-Forwarded-For; the client
	// sent "6.6.6.6" itself, hoping to be taken for someone else.
	ips, err := clientip.New([]string{"10.0.0.0/8"})
	if err != nil {
		panic(err)
	}

	h := http.Header{"X-Forwarded-For": {"6.6.6.6, 198.51.100.7"}}
	ip, _ := ips.Resolve("10.0.0.2:41000", h)
	fmt.Println(ip)

	// The same header straight from the internet is not believed.
	ip, _ = ips.Resolve("203.0.113.9:41000", h)
	fmt.Println(ip)
	// Output:
	// 198.51.100.7
	// 203.0.113.9
}
