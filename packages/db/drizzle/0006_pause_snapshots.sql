CREATE TABLE "snapshots" (
	"id" text PRIMARY KEY NOT NULL,
	"owner_id" text NOT NULL,
	"name" text,
	"session_id" text NOT NULL,
	"backend" text NOT NULL,
	"instance_id" text NOT NULL,
	"image" text NOT NULL,
	"template_id" text,
	"resources" jsonb NOT NULL,
	"network" jsonb DEFAULT '{"mode":"none","allow":[]}'::jsonb NOT NULL,
	"secrets" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"memory" boolean NOT NULL,
	"bytes" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "snapshots_owner_id_name_key" UNIQUE("owner_id","name")
);
--> statement-breakpoint
ALTER TABLE "sessions" DROP CONSTRAINT "sessions_state_check";--> statement-breakpoint
DROP INDEX "sessions_owner_live";--> statement-breakpoint
ALTER TABLE "sessions" ADD COLUMN "parent_id" text;--> statement-breakpoint
ALTER TABLE "sessions" ADD COLUMN "from_snapshot_id" text;--> statement-breakpoint
ALTER TABLE "sessions" ADD COLUMN "paused_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "sessions" ADD COLUMN "paused_ms" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "sessions" ADD COLUMN "keep_awake" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "snapshots" ADD CONSTRAINT "snapshots_owner_id_fkey" FOREIGN KEY ("owner_id") REFERENCES "public"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "snapshots_owner" ON "snapshots" USING btree ("owner_id");--> statement-breakpoint
CREATE INDEX "sessions_owner_live" ON "sessions" USING btree ("owner_id") WHERE "sessions"."state" IN ('creating', 'running', 'stopped', 'paused', 'destroying');--> statement-breakpoint
ALTER TABLE "sessions" ADD CONSTRAINT "sessions_state_check" CHECK ("sessions"."state" IN ('creating', 'running', 'stopped', 'paused', 'destroying', 'destroyed', 'failed'));