CREATE TABLE "nodes" (
	"id" text PRIMARY KEY NOT NULL,
	"url" text NOT NULL,
	"preview_url" text,
	"host" text NOT NULL,
	"swarm_node_id" text,
	"availability" text DEFAULT 'active' NOT NULL,
	"draining" boolean DEFAULT false NOT NULL,
	"capacity" jsonb NOT NULL,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"reported_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "nodes_availability_check" CHECK ("nodes"."availability" IN ('active', 'pause', 'drain'))
);
--> statement-breakpoint
CREATE INDEX "nodes_swarm_node_id" ON "nodes" USING btree ("swarm_node_id");