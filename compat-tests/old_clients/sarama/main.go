// Command oldgo drives two old Go Kafka clients against a broker and prints
// one JSON object with what they saw; compat-tests/test_old_clients.py
// asserts on it. Every step's outcome is recorded (a failing step goes under
// "errors" and the next steps still run); the exit code is 0 whenever the
// JSON was printed.
//
//	oldgo sarama       -bootstrap H:P -topic T -group G -version 0.8.2.0 -codec none|gzip|snappy|lz4 [-n 20] [-batches 2]
//	oldgo sarama-admin -bootstrap H:P -topic T -version 0.10.2.0
//	oldgo kafkago      -bootstrap H:P -topic T [-codec none|gzip|snappy|lz4] [-n 20]
//
// Sarama 1.22.1 is the version Debian packages (golang-github-shopify-sarama-dev);
// segmentio/kafka-go 0.2.1 likewise (golang-github-segmentio-kafka-go-dev).
// Records are k<i> / v<i>; with Sarama >= 0.10 and with kafka-go (message
// format v1) each carries the timestamp 1700000000000+i ms.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/Shopify/sarama"
	kafka "github.com/segmentio/kafka-go"
	kafkagzip "github.com/segmentio/kafka-go/gzip"
	kafkalz4 "github.com/segmentio/kafka-go/lz4"
	kafkasnappy "github.com/segmentio/kafka-go/snappy"
)

const ts0 = int64(1700000000000)

type produced struct {
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
}

type consumed struct {
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Key       string `json:"key"`
	Value     string `json:"value"`
	Timestamp int64  `json:"timestamp"` // ms; 0 when the client saw none
}

type stepError struct {
	Step  string `json:"step"`
	Error string `json:"error"`
}

type report struct {
	mu     sync.Mutex
	Client string                 `json:"client"`
	Args   map[string]interface{} `json:"args"`
	Out    map[string]interface{} `json:"out"`
	Errors []stepError            `json:"errors"`
	done   bool
}

func newReport(client string) *report {
	return &report{Client: client, Args: map[string]interface{}{}, Out: map[string]interface{}{}, Errors: []stepError{}}
}

func (r *report) set(k string, v interface{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Out[k] = v
}

func (r *report) step(name string, fn func() error) bool {
	err := fn()
	if err != nil {
		r.mu.Lock()
		r.Errors = append(r.Errors, stepError{name, err.Error()})
		r.mu.Unlock()
		return false
	}
	return true
}

func (r *report) print() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return
	}
	r.done = true
	b, err := json.Marshal(r)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println(string(b))
}

// watchdog: past the deadline, report what we have and exit (old clients retry some calls forever).
func (r *report) watchdog(d time.Duration) {
	go func() {
		time.Sleep(d)
		r.mu.Lock()
		r.Errors = append(r.Errors, stepError{"deadline", fmt.Sprintf("not done after %s (a call hung)", d)})
		r.mu.Unlock()
		r.print()
		os.Exit(0)
	}()
}

func key(i int) string   { return fmt.Sprintf("k%d", i) }
func value(i int) string { return fmt.Sprintf("v%d", i) }

func saramaCodec(s string) (sarama.CompressionCodec, error) {
	switch s {
	case "none":
		return sarama.CompressionNone, nil
	case "gzip":
		return sarama.CompressionGZIP, nil
	case "snappy":
		return sarama.CompressionSnappy, nil
	case "lz4":
		return sarama.CompressionLZ4, nil
	}
	return 0, fmt.Errorf("unknown codec %q", s)
}

func saramaConfig(version string, r *report) (*sarama.Config, error) {
	v, err := sarama.ParseKafkaVersion(version)
	if err != nil {
		return nil, err
	}
	c := sarama.NewConfig()
	c.ClientID = "sarama-old"
	c.Version = v
	c.Net.DialTimeout = 10 * time.Second
	c.Net.ReadTimeout = 15 * time.Second
	c.Net.WriteTimeout = 15 * time.Second
	c.Metadata.Retry.Max = 3
	c.Metadata.Retry.Backoff = 200 * time.Millisecond
	r.Args["version"] = v.String()
	return c, nil
}

func runSarama(args []string) {
	fs := flag.NewFlagSet("sarama", flag.ExitOnError)
	bootstrap := fs.String("bootstrap", "", "")
	topic := fs.String("topic", "legacy", "")
	group := fs.String("group", "g", "")
	version := fs.String("version", "0.8.2.0", "")
	codec := fs.String("codec", "none", "")
	n := fs.Int("n", 20, "")
	batches := fs.Int("batches", 1, "")
	consumeTimeout := fs.Duration("consume-timeout", 30*time.Second, "")
	deadline := fs.Duration("deadline", 120*time.Second, "")
	_ = fs.Parse(args)
	r := newReport("Shopify/sarama v1.22.1")
	r.Args["codec"], r.Args["n"], r.Args["topic"] = *codec, *n, *topic
	r.watchdog(*deadline)
	defer r.print()
	addrs := []string{*bootstrap}

	r.step("produce", func() error {
		conf, err := saramaConfig(*version, r)
		if err != nil {
			return err
		}
		cc, err := saramaCodec(*codec)
		if err != nil {
			return err
		}
		conf.Producer.Compression = cc
		conf.Producer.Return.Successes = true
		conf.Producer.RequiredAcks = sarama.WaitForLocal
		conf.Producer.Retry.Max = 0
		conf.Producer.Partitioner = sarama.NewManualPartitioner
		// one produce request per SendMessages call
		conf.Producer.Flush.Frequency = 100 * time.Millisecond
		p, err := sarama.NewSyncProducer(addrs, conf)
		if err != nil {
			return err
		}
		defer p.Close()
		per := (*n + *batches - 1) / *batches
		var out []produced
		for start := 0; start < *n; start += per {
			var msgs []*sarama.ProducerMessage
			for i := start; i < *n && i < start+per; i++ {
				m := &sarama.ProducerMessage{Topic: *topic, Partition: 0,
					Key: sarama.StringEncoder(key(i)), Value: sarama.StringEncoder(value(i))}
				if conf.Version.IsAtLeast(sarama.V0_10_0_0) {
					m.Timestamp = time.Unix(0, (ts0+int64(i))*int64(time.Millisecond))
				}
				msgs = append(msgs, m)
			}
			if err := p.SendMessages(msgs); err != nil {
				return err
			}
			for _, m := range msgs {
				out = append(out, produced{m.Partition, m.Offset})
			}
		}
		r.set("produced", out)
		return nil
	})

	r.step("offsets+consume", func() error {
		conf, err := saramaConfig(*version, r)
		if err != nil {
			return err
		}
		conf.Consumer.Return.Errors = true
		client, err := sarama.NewClient(addrs, conf)
		if err != nil {
			return err
		}
		defer client.Close()
		oldest, err := client.GetOffset(*topic, 0, sarama.OffsetOldest)
		if err != nil {
			return fmt.Errorf("GetOffset(OffsetOldest): %w", err)
		}
		newest, err := client.GetOffset(*topic, 0, sarama.OffsetNewest)
		if err != nil {
			return fmt.Errorf("GetOffset(OffsetNewest): %w", err)
		}
		r.set("oldest", oldest)
		r.set("newest", newest)
		consumer, err := sarama.NewConsumerFromClient(client)
		if err != nil {
			return err
		}
		defer consumer.Close()
		pc, err := consumer.ConsumePartition(*topic, 0, sarama.OffsetOldest)
		if err != nil {
			return err
		}
		defer pc.Close()
		var got []consumed
		timer := time.NewTimer(*consumeTimeout)
		defer timer.Stop()
		for len(got) < *n {
			select {
			case m := <-pc.Messages():
				var ts int64
				if !m.Timestamp.IsZero() && m.Timestamp.Unix() > 0 {
					ts = m.Timestamp.UnixNano() / int64(time.Millisecond)
				}
				got = append(got, consumed{m.Partition, m.Offset, string(m.Key), string(m.Value), ts})
			case e := <-pc.Errors():
				r.set("consumed", got)
				return fmt.Errorf("consumer: %v", e)
			case <-timer.C:
				r.set("consumed", got)
				return fmt.Errorf("consumed %d of %d records in %s", len(got), *n, *consumeTimeout)
			}
		}
		r.set("consumed", got)
		return nil
	})

	r.step("commit", func() error {
		conf, err := saramaConfig(*version, r)
		if err != nil {
			return err
		}
		conf.Consumer.Offsets.Initial = sarama.OffsetOldest
		client, err := sarama.NewClient(addrs, conf)
		if err != nil {
			return err
		}
		defer client.Close()
		om, err := sarama.NewOffsetManagerFromClient(*group, client)
		if err != nil {
			return err
		}
		pom, err := om.ManagePartition(*topic, 0)
		if err != nil {
			om.Close()
			return err
		}
		before, _ := pom.NextOffset() // no commit yet: Consumer.Offsets.Initial
		r.set("initial_next_offset", before)
		pom.MarkOffset(int64(*n), fmt.Sprintf("meta-%d", *n))
		if err := pom.Close(); err != nil {
			om.Close()
			return err
		}
		if err := om.Close(); err != nil { // flushes the commit
			return err
		}
		// a fresh offset manager reads it back (OffsetFetch)
		om2, err := sarama.NewOffsetManagerFromClient(*group, client)
		if err != nil {
			return err
		}
		defer om2.Close()
		pom2, err := om2.ManagePartition(*topic, 0)
		if err != nil {
			return err
		}
		defer pom2.Close()
		off, md := pom2.NextOffset()
		r.set("committed", off)
		r.set("committed_metadata", md)
		return nil
	})
}

func runSaramaAdmin(args []string) {
	fs := flag.NewFlagSet("sarama-admin", flag.ExitOnError)
	bootstrap := fs.String("bootstrap", "", "")
	topic := fs.String("topic", "legacy-admin", "")
	version := fs.String("version", "0.10.2.0", "")
	deadline := fs.Duration("deadline", 120*time.Second, "")
	_ = fs.Parse(args)
	r := newReport("Shopify/sarama v1.22.1")
	r.Args["topic"] = *topic
	r.watchdog(*deadline)
	defer r.print()
	conf, err := saramaConfig(*version, r)
	if err != nil {
		r.step("config", func() error { return err })
		return
	}
	conf.ClientID = "sarama-old-admin"
	conf.Admin.Timeout = 10 * time.Second
	var admin sarama.ClusterAdmin
	if !r.step("connect", func() error {
		var err error
		admin, err = sarama.NewClusterAdmin([]string{*bootstrap}, conf)
		return err
	}) {
		return
	}
	defer admin.Close()
	errText := func(err error) string {
		if err == nil {
			return ""
		}
		return err.Error()
	}
	retention := "3600000"
	r.set("create_topic", errText(admin.CreateTopic(*topic, &sarama.TopicDetail{
		NumPartitions: 3, ReplicationFactor: 1,
		ConfigEntries: map[string]*string{"retention.ms": &retention}}, false)))
	r.set("create_topic_again", errText(admin.CreateTopic(*topic, &sarama.TopicDetail{
		NumPartitions: 3, ReplicationFactor: 1}, false)))
	r.step("describe_topics", func() error {
		md, err := admin.DescribeTopics([]string{*topic})
		if err != nil {
			return err
		}
		for _, t := range md {
			if t.Name == *topic {
				r.set("partitions", len(t.Partitions))
			}
		}
		return nil
	})
	// Sarama sends DescribeConfigs (v0) and the ACL requests only from Version 0.11 on.
	if conf.Version.IsAtLeast(sarama.V0_11_0_0) {
		r.step("describe_config", func() error {
			entries, err := admin.DescribeConfig(sarama.ConfigResource{
				Type: sarama.TopicResource, Name: *topic,
				ConfigNames: []string{"retention.ms", "cleanup.policy"}})
			if err != nil {
				return err
			}
			cfg := map[string]interface{}{}
			for _, e := range entries {
				cfg[e.Name] = map[string]interface{}{"value": e.Value, "default": e.Default, "read_only": e.ReadOnly}
			}
			r.set("config", cfg)
			return nil
		})
		r.step("list_topics", func() error {
			topics, err := admin.ListTopics() // Metadata, then DescribeConfigs of every topic
			if err != nil {
				return err
			}
			d, ok := topics[*topic]
			r.set("listed", ok)
			if ok {
				r.set("listed_partitions", d.NumPartitions)
				if v := d.ConfigEntries["retention.ms"]; v != nil {
					r.set("listed_retention_ms", *v)
				}
			}
			return nil
		})
	}
	// ACLs through the controller broker itself: Sarama's ClusterAdmin drops the
	// per-resource error codes, and they are what Kafka answers without an authorizer.
	if conf.Version.IsAtLeast(sarama.V0_11_0_0) {
		r.step("acls", func() error {
			client, err := sarama.NewClient([]string{*bootstrap}, conf)
			if err != nil {
				return err
			}
			defer client.Close()
			b, err := client.Controller()
			if err != nil {
				return err
			}
			name := *topic
			filter := &sarama.AclFilter{ResourceType: sarama.AclResourceTopic, ResourceName: &name,
				Operation: sarama.AclOperationAny, PermissionType: sarama.AclPermissionAny}
			cr, err := b.CreateAcls(&sarama.CreateAclsRequest{AclCreations: []*sarama.AclCreation{{
				Resource: sarama.Resource{ResourceType: sarama.AclResourceTopic, ResourceName: *topic},
				Acl: sarama.Acl{Principal: "User:alice", Host: "*", Operation: sarama.AclOperationRead,
					PermissionType: sarama.AclPermissionAllow}}}})
			if err != nil {
				return fmt.Errorf("CreateAcls: %w", err)
			}
			var codes []int16
			for _, c := range cr.AclCreationResponses {
				codes = append(codes, int16(c.Err))
			}
			r.set("create_acls_errors", codes)
			dr, err := b.DescribeAcls(&sarama.DescribeAclsRequest{AclFilter: *filter})
			if err != nil {
				return fmt.Errorf("DescribeAcls: %w", err)
			}
			r.set("describe_acls_error", int16(dr.Err))
			r.set("describe_acls_resources", len(dr.ResourceAcls))
			xr, err := b.DeleteAcls(&sarama.DeleteAclsRequest{Filters: []*sarama.AclFilter{filter}})
			if err != nil {
				return fmt.Errorf("DeleteAcls: %w", err)
			}
			codes = nil
			for _, f := range xr.FilterResponses {
				codes = append(codes, int16(f.Err))
			}
			r.set("delete_acls_errors", codes)
			return nil
		})
	}
	r.set("delete_topic", errText(admin.DeleteTopic(*topic)))
	r.step("after_delete", func() error {
		md, err := admin.DescribeTopics([]string{*topic})
		if err != nil {
			return err
		}
		var codes []string
		for _, t := range md {
			codes = append(codes, t.Err.Error())
		}
		sort.Strings(codes)
		r.set("after_delete", strings.Join(codes, ","))
		return nil
	})
}

func runKafkaGo(args []string) {
	fs := flag.NewFlagSet("kafkago", flag.ExitOnError)
	bootstrap := fs.String("bootstrap", "", "")
	topic := fs.String("topic", "legacy", "")
	codec := fs.String("codec", "none", "")
	n := fs.Int("n", 20, "")
	consumeTimeout := fs.Duration("consume-timeout", 30*time.Second, "")
	deadline := fs.Duration("deadline", 120*time.Second, "")
	_ = fs.Parse(args)
	r := newReport("segmentio/kafka-go v0.2.1")
	r.Args["codec"], r.Args["n"], r.Args["topic"] = *codec, *n, *topic
	r.watchdog(*deadline)
	defer r.print()

	r.step("produce", func() error {
		wc := kafka.WriterConfig{Brokers: []string{*bootstrap}, Topic: *topic,
			Balancer: &kafka.LeastBytes{}, BatchSize: *n, BatchTimeout: 100 * time.Millisecond,
			MaxAttempts: 1, ReadTimeout: 15 * time.Second, WriteTimeout: 15 * time.Second}
		switch *codec {
		case "none":
		case "gzip":
			wc.CompressionCodec = kafkagzip.NewCompressionCodec()
		case "snappy":
			wc.CompressionCodec = kafkasnappy.NewCompressionCodec()
		case "lz4":
			wc.CompressionCodec = kafkalz4.NewCompressionCodec()
		default:
			return fmt.Errorf("unknown codec %q", *codec)
		}
		w := kafka.NewWriter(wc)
		var msgs []kafka.Message
		for i := 0; i < *n; i++ {
			msgs = append(msgs, kafka.Message{Key: []byte(key(i)), Value: []byte(value(i)),
				Time: time.Unix(0, (ts0+int64(i))*int64(time.Millisecond))})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			w.Close()
			return err
		}
		return w.Close()
	})

	r.step("consume", func() error {
		rd := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{*bootstrap}, Topic: *topic,
			Partition: 0, MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 200 * time.Millisecond})
		defer rd.Close()
		if err := rd.SetOffset(kafka.FirstOffset); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), *consumeTimeout)
		defer cancel()
		var got []consumed
		for len(got) < *n {
			m, err := rd.ReadMessage(ctx)
			if err != nil {
				r.set("consumed", got)
				return fmt.Errorf("after %d records: %w", len(got), err)
			}
			var ts int64
			if !m.Time.IsZero() && m.Time.Unix() > 0 {
				ts = m.Time.UnixNano() / int64(time.Millisecond)
			}
			got = append(got, consumed{int32(m.Partition), m.Offset, string(m.Key), string(m.Value), ts})
		}
		r.set("consumed", got)
		return nil
	})

	r.step("offsets", func() error {
		conn, err := kafka.DialLeader(context.Background(), "tcp", *bootstrap, *topic, 0)
		if err != nil {
			return err
		}
		defer conn.Close()
		first, last, err := conn.ReadOffsets() // ListOffsets v1
		if err != nil {
			return err
		}
		r.set("first_offset", first)
		r.set("last_offset", last)
		return nil
	})
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: oldgo sarama|sarama-admin|kafkago [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "sarama":
		runSarama(os.Args[2:])
	case "sarama-admin":
		runSaramaAdmin(os.Args[2:])
	case "kafkago":
		runKafkaGo(os.Args[2:])
	default:
		fmt.Fprintln(os.Stderr, "unknown command", os.Args[1])
		os.Exit(2)
	}
}
